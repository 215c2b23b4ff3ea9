/** The API client wired to the Jupyter server through ServerConnection (XSRF, token, base URL). */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { MLPlatformClient, networkError } from './api';

export function makeClient(settings: ServerConnection.ISettings = ServerConnection.makeSettings()): MLPlatformClient {
  return new MLPlatformClient(async (path, init) => {
    const url = URLExt.join(settings.baseUrl, path);
    try {
      return await ServerConnection.makeRequest(url, init, settings);
    } catch (error) {
      throw networkError(error);
    }
  });
}
